from mlhub.publisher.app import main

main()
