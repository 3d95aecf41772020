import sys

from nurec.cli import main

sys.exit(main())
