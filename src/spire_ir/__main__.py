from spire_ir.cli import main

raise SystemExit(main())
