from dashboard.main import main

main()
