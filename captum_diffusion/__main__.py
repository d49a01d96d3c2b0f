"""``python -m captum_diffusion``: the ``diffusion-explain`` command line."""
import sys

from captum_diffusion.cli import main

sys.exit(main())
