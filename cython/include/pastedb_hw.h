/* pastedb_hw.h -- the few CPU primitives Cython cannot spell: cache-line
 * write-back for persistent memory, and atomics.  (CRC32C is in
 * pastedb_crc.h, which only the format module includes.)
 *
 * Everything is static inline so each extension module that includes this
 * header gets its own copy; no separate C library to link.
 */
#ifndef PASTEDB_HW_H
#define PASTEDB_HW_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PDB_X86 1
#else
#define PDB_X86 0
#endif

/* ------------------------------------------------------- cache-line flush
 * For the pmem backend: write back every cache line of [p, p+n) and fence.
 * clwb keeps the line cached, clflushopt evicts it, clflush is the ordered
 * fallback that needs no fence.  Chosen once by CPUID (leaf 7, EBX bits 24
 * and 23).
 */
enum { PDB_FLUSH_NONE = 0, PDB_FLUSH_CLFLUSH = 1, PDB_FLUSH_CLFLUSHOPT = 2, PDB_FLUSH_CLWB = 3 };

static inline int pdb_flush_kind(void) {
#if PDB_X86
    unsigned int a, b, c, d;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        if (b & (1u << 24)) return PDB_FLUSH_CLWB;
        if (b & (1u << 23)) return PDB_FLUSH_CLFLUSHOPT;
    }
    if (__get_cpuid(1, &a, &b, &c, &d) && (d & (1u << 19)))
        return PDB_FLUSH_CLFLUSH;
#endif
    return PDB_FLUSH_NONE;
}

static inline void pdb_flush_range(int kind, const void *p, size_t n) {
#if PDB_X86 && defined(__x86_64__)
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)63;
    uintptr_t end = (uintptr_t)p + n;
    switch (kind) {
    case PDB_FLUSH_CLWB:
        for (; a < end; a += 64)
            __asm__ volatile(".byte 0x66, 0x0f, 0xae, 0x30" : "+m"(*(volatile char *)a));
        __asm__ volatile("sfence" ::: "memory");
        break;
    case PDB_FLUSH_CLFLUSHOPT:
        for (; a < end; a += 64)
            __asm__ volatile(".byte 0x66, 0x0f, 0xae, 0x38" : "+m"(*(volatile char *)a));
        __asm__ volatile("sfence" ::: "memory");
        break;
    case PDB_FLUSH_CLFLUSH:
        for (; a < end; a += 64)
            __asm__ volatile("clflush %0" : "+m"(*(volatile char *)a));
        break;
    default:
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
#else
    (void)kind; (void)p; (void)n;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

/* Ask for the first n bytes at p (at most 4 KiB) to be brought into the
 * cache: a scan reads values scattered over the pool, and asking a few
 * entries ahead overlaps their misses instead of taking them one by one. */
static inline void pdb_prefetch(const void *p, size_t n) {
    const char *c = (const char *)p;
    size_t i;
    if (n > 4096)
        n = 4096;
    for (i = 0; i < n; i += 64)
        __builtin_prefetch(c + i, 0, 3);
}

static inline void pdb_sfence(void) {
#if PDB_X86
    __asm__ volatile("sfence" ::: "memory");
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

/* ---------------------------------------------------------------- atomics */
static inline uint64_t pdb_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void pdb_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t pdb_fetch_add_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
static inline int64_t pdb_fetch_add_i64(int64_t *p, int64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }

/* Sequentially consistent pair for the close/operation handshake: an
 * operation increments `active` then reads `closed`; close() sets `closed`
 * then reads `active`.  With SEQ_CST one of them always sees the other. */
static inline int64_t pdb_xadd_sc(int64_t *p, int64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline int64_t pdb_load_sc(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline int32_t pdb_xadd32(int32_t *p, int32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline int32_t pdb_load32(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void pdb_store_sc(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }

#endif /* PASTEDB_HW_H */
