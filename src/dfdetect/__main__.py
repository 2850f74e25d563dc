from dfdetect.cli import main

raise SystemExit(main())
