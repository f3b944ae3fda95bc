from streamq.dashboard.main import main

main()
