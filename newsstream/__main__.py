from newsstream.cli.app import main

main()
