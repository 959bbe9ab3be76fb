"""Column types that behave the same on MySQL/MariaDB and SQLite.

- ``UtcDateTime``: domain code uses aware UTC datetimes; the database stores naive UTC (MySQL sessions run
  with time_zone '+00:00', see common.database).
- ``Money`` (prices, sizes, amounts) and ``Probability`` (confidences, thresholds and class probabilities,
  DECIMAL(6, 4)): ``Decimal`` in Python on both engines, quantized to the column's scale on the way in and out.
  MySQL stores DECIMAL(p, s): exact. SQLite has no decimal type: the value is stored as a REAL (a double) and
  read back as the shortest decimal that is that double, so a value of at most 15 significant digits comes back
  exactly (every DECIMAL(15, s) or narrower column). A wider value, possible in the DECIMAL(20, 8) to
  DECIMAL(30, 10) columns (candles, execution sizes, balances), comes back as the nearest double: within about
  1e-16 of it, relatively, before the quantization to the scale, not exactly.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import TIMESTAMP, DateTime, Float, Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from common.clock import as_utc


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetime in Python, naive UTC in the database. ``timestamp=True`` uses TIMESTAMP on MySQL."""

    impl = DateTime
    cache_ok = True

    def __init__(self, timestamp: bool = False, fsp: int = 0) -> None:
        super().__init__()
        self.timestamp = timestamp
        self.fsp = fsp

    def __repr__(self) -> str:
        args = [f"timestamp={self.timestamp}"] if self.timestamp else []
        args += [f"fsp={self.fsp}"] if self.fsp else []
        return f"UtcDateTime({', '.join(args)})"

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects import mysql

            if self.timestamp:
                return dialect.type_descriptor(mysql.TIMESTAMP(fsp=self.fsp or None))
            return dialect.type_descriptor(mysql.DATETIME(fsp=self.fsp or None))
        return dialect.type_descriptor(TIMESTAMP() if self.timestamp else DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite server defaults come back as text
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return as_utc(value)


class FixedPoint(TypeDecorator[Decimal]):
    """DECIMAL(precision, scale) that is a ``Decimal`` in Python on every engine (see the module docstring for what
    SQLite keeps). Use Money or Probability, which name what a column holds."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__()
        self.precision = precision
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.precision}, {self.scale})"

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Float())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        dec = value if isinstance(value, Decimal) else Decimal(str(value))
        if not dec.is_finite():
            raise ValueError("decimal value must be finite")
        dec = dec.quantize(self._quantum)
        return float(dec) if dialect.name == "sqlite" else dec

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        dec = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
        return dec.quantize(self._quantum)


class Money(FixedPoint):
    """Prices, sizes, amounts and balances: DECIMAL(precision, scale)."""

    cache_ok = True


class Probability(FixedPoint):
    """A probability, confidence or threshold in [0, 1] with four decimals: DECIMAL(6, 4), the original tables'
    type for these columns."""

    cache_ok = True

    def __init__(self) -> None:
        super().__init__(6, 4)

    def __repr__(self) -> str:
        return "Probability()"
