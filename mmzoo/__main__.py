"""``python -m mmzoo`` (and ``torchrun -m mmzoo``) runs the command line."""

from mmzoo.cli import main

raise SystemExit(main())
