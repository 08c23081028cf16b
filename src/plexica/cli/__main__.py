from plexica.cli.entry import main

main()
