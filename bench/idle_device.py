"""``omaovi device -c CONFIG`` as a branch runs it, with its RC522 on a simulated SPI bus.

Run with bench/fake_pi first on PYTHONPATH (the mfrc522 library then finds the
stand-in spidev and RPi.GPIO) and GPIOZERO_PIN_FACTORY=mock. The simulated bus
has no /dev/spidev node, which the reader checks for before opening, so the
reader is pointed at a stand-in file, SPIDEV_PREFIX, given as the second argument.
"""

import sys

from device.cli import main
from device.readers.mfrc522_reader import Mfrc522Reader

if __name__ == "__main__":
    config, spidev_prefix = sys.argv[1:3]
    Mfrc522Reader.__init__.__kwdefaults__["spidev_prefix"] = spidev_prefix
    sys.exit(main(["device", "-c", config]))
