"""The lab catalogue: the lab files under labs/content/, in lab order.

`LABS` (slug → title) is what lessons and questions may link to; their content checks
import it, so it stays a plain dict.
"""

from labs.lab_files import Lab, load_labs

CATALOGUE: dict[str, Lab] = load_labs()
LABS: dict[str, str] = {slug: lab.title for slug, lab in CATALOGUE.items()}
