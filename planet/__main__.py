import sys

from planet.cli import main

sys.exit(main())
