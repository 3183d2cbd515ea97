from quickstart.cli import main

main()
