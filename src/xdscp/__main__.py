from xdscp.cli.main import main

raise SystemExit(main())
