from datakit.cli import main

raise SystemExit(main())
