from bellad.cli import main

main()
