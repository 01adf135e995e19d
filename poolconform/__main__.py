from poolconform.cli import main

raise SystemExit(main())
