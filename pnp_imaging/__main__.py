from pnp_imaging.cli import main

raise SystemExit(main())
