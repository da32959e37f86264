from tamma.cli.main import main

main()
