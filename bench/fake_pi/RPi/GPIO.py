"""A stand-in for ``RPi.GPIO``, as far as the mfrc522 library uses it (its reset pin)."""

BCM = 11
BOARD = 10
OUT = 0
IN = 1
HIGH = 1
LOW = 0
_mode = None


def getmode():
    return _mode


def setmode(mode):
    global _mode
    _mode = mode


def setwarnings(flag):
    pass


def setup(pin, direction, **kwargs):
    pass


def output(pin, value):
    pass


def input(pin):
    return LOW


def cleanup(*pins):
    pass
