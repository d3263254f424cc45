"""A stand-in for the ``spidev`` module: an RC522 on a simulated SPI bus, no card in the field.

With this on the path the real ``mfrc522`` library runs unchanged, every register
read and write of its polling included, so the idle benchmark (P7) pays what the
device pays on a Pi except the bus transfers themselves. Registers keep what is
written to them; the version register reads 0x92, a genuine MFRC522 v2.
"""

_VERSION_REG = 0x37


class SpiDev:
    def __init__(self):
        self.max_speed_hz = 0
        self._registers = {_VERSION_REG: 0x92}

    def open(self, bus, device):
        pass

    def close(self):
        pass

    def xfer2(self, data):
        """The RC522 address byte: bit 7 set for a read, the register in bits 6-1."""
        register = (data[0] >> 1) & 0x3F
        if data[0] & 0x80:
            return [0, self._registers.get(register, 0)]
        self._registers[register] = data[1]
        return [0, 0]
