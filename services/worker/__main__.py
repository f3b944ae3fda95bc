from streamq.services.worker.main import main

main()
