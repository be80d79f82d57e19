/* pastedb_crc.h -- CRC32C, the one checksum of every on-disk structure.
 *
 * Castagnoli polynomial (reflected 0x82F63B78), as iSCSI, ext4 and LevelDB
 * use.  The SSE4.2 crc32 instruction computes exactly this; the slicing-by-8
 * table path is the portable fallback.  pdb_crc32c_update takes and returns
 * the *internal* (pre-inverted) state so callers can chain regions: start
 * with PDB_CRC_INIT, finish with pdb_crc32c_final.
 *
 * Only the format module (format.pyx) includes this header, so there is one
 * table set in the process.  format's module initialisation calls
 * pdb_crc_init() once, under the import lock, before any other module can
 * reach the checksum (they call it through format's exported functions);
 * nothing is initialised lazily, so no thread can see half-built tables.
 */
#ifndef PASTEDB_CRC_H
#define PASTEDB_CRC_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PDB_CRC_X86 1
#else
#define PDB_CRC_X86 0
#endif

#define PDB_CRC_INIT 0xFFFFFFFFu

static uint32_t pdb_crc_table[8][256];
static int pdb_crc_hw = 0;

static void pdb_crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        pdb_crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = pdb_crc_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = pdb_crc_table[0][c & 0xFF] ^ (c >> 8);
            pdb_crc_table[k][n] = c;
        }
    }
#if PDB_CRC_X86
    unsigned int a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d))
        pdb_crc_hw = (c & bit_SSE4_2) != 0;
#endif
}

static inline uint32_t pdb_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) {
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = pdb_crc_table[7][w & 0xFF] ^ pdb_crc_table[6][(w >> 8) & 0xFF] ^
              pdb_crc_table[5][(w >> 16) & 0xFF] ^ pdb_crc_table[4][(w >> 24) & 0xFF] ^
              pdb_crc_table[3][(w >> 32) & 0xFF] ^ pdb_crc_table[2][(w >> 40) & 0xFF] ^
              pdb_crc_table[1][(w >> 48) & 0xFF] ^ pdb_crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = pdb_crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if PDB_CRC_X86 && defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t pdb_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    /* One stream, 8 bytes per instruction: several GB/s, above what the page
     * cache delivers to pastedb-check and what one commit group needs. */
    while (n && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

static inline uint32_t pdb_crc32c_update(uint32_t crc, const void *buf, size_t n) {
#if PDB_CRC_X86 && defined(__x86_64__)
    if (pdb_crc_hw)
        return pdb_crc32c_hw(crc, (const unsigned char *)buf, n);
#endif
    return pdb_crc32c_sw(crc, (const unsigned char *)buf, n);
}

static inline int pdb_crc32c_is_hw(void) { return pdb_crc_hw; }

#endif /* PASTEDB_CRC_H */
