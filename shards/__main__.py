from shards.cli import main

main()
