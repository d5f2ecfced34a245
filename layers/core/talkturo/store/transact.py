"""One DynamoDB transaction whose writes carry labels, so a refusal says which write failed.

DynamoDB answers a cancelled transaction with one reason per write, in the order the request
listed them; pynamodb lists condition checks, then deletes, then puts, then updates. This keeps
the labels in that same order.
"""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from talkturo.store.table import Item, connection

# What DynamoDB (and the emulator) accept in one TransactWriteItems call.
MAX_WRITES = 100


class Refused(Exception):
    """A condition of the transaction failed; `labels` name the writes whose condition did."""

    def __init__(self, labels: set[str]) -> None:
        super().__init__(f"transaction refused by: {', '.join(sorted(labels))}")
        self.labels = labels


class Contention(Exception):
    """Another transaction touched the same items at the same moment; safe to try again."""


class Writes:
    def __init__(self) -> None:
        self._checks: list[tuple[str, Any]] = []
        self._deletes: list[tuple[str, Any]] = []
        self._puts: list[tuple[str, Any]] = []
        self._updates: list[tuple[str, Any]] = []

    def __len__(self) -> int:
        return len(self._checks) + len(self._deletes) + len(self._puts) + len(self._updates)

    def check(self, label: str, model: type[Item], pk: str, sk: str, condition: Condition) -> None:
        self._checks.append((label, (model, pk, sk, condition)))

    def put(self, label: str, item: Item, condition: Condition | None = None) -> None:
        self._puts.append((label, (item, condition)))

    def delete(
        self,
        label: str,
        item: Item,
        condition: Condition | None = None,
        *,
        add_version_condition: bool = True,
    ) -> None:
        self._deletes.append((label, (item, condition, add_version_condition)))

    def update(
        self, label: str, item: Item, actions: list[Action], condition: Condition | None = None
    ) -> None:
        self._updates.append((label, (item, actions, condition)))

    def extend(self, other: Writes) -> None:
        """Add `other`'s writes to these (one transaction for both)."""
        self._checks += other._checks
        self._deletes += other._deletes
        self._puts += other._puts
        self._updates += other._updates

    def commit(self) -> None:
        """Apply every write or none; Refused or Contention when DynamoDB cancels."""
        if not len(self):
            return
        connection()
        labels = [label for label, _ in self._checks + self._deletes + self._puts + self._updates]
        try:
            with TransactWrite(connection=Item._get_connection().connection) as tx:
                for _, (model, pk, sk, condition) in self._checks:
                    tx.condition_check(model, pk, sk, condition)
                for _, (item, condition, versioned) in self._deletes:
                    tx.delete(item, condition, add_version_condition=versioned)
                for _, (item, condition) in self._puts:
                    tx.save(item, condition)
                for _, (item, actions, condition) in self._updates:
                    tx.update(item, actions, condition)
        except TransactWriteError as error:
            reasons = error.cancellation_reasons
            codes = {reason.code for reason in reasons if reason}
            if error.cause_response_code == "TransactionConflictException" or (
                "TransactionConflict" in codes
            ):
                raise Contention from error
            failed = {
                label
                for label, reason in zip(labels, reasons, strict=False)
                if reason and reason.code == "ConditionalCheckFailed"
            }
            if failed:
                raise Refused(failed) from error
            raise
