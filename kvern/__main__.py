from kvern.cli import main

main()
