from jobpulse.cli import main

main()
