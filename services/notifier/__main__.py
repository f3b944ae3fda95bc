from streamq.services.notifier.main import main

main()
