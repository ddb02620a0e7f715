from astra.cli import main

main()
