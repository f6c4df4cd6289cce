from opennimble.cli import main

main()
