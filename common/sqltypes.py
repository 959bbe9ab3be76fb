"""Column types that behave the same on MySQL/MariaDB and SQLite.

- ``UtcDateTime``: domain code uses aware UTC datetimes; the database stores naive UTC (MySQL sessions run
  with time_zone '+00:00', see common.database).
- ``Money``: ``Decimal`` in Python on both engines. MySQL uses DECIMAL(p, s); SQLite has no decimal type, so
  the value travels as a float and is quantized back to the column's scale (exact for the precisions used here).
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


class Money(TypeDecorator[Decimal]):
    """DECIMAL(precision, scale) that is a ``Decimal`` in Python on every engine."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__()
        self.precision = precision
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)

    def __repr__(self) -> str:
        return f"Money({self.precision}, {self.scale})"

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
