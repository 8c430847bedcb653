from longpos.cli import main

main()
