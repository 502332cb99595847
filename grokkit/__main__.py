from grokkit.cli import main

main()
