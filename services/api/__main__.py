from streamq.services.api.main import main

main()
