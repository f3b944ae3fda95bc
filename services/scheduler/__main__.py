from streamq.services.scheduler.main import main

main()
