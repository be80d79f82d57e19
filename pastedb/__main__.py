from pastedb.cli import main

main()
