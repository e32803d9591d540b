from pyvrrp.cli import main

raise SystemExit(main())
