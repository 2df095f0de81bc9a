"""Result rows become IntegrationRow positionally, so the two must list the same columns."""

from astra.integrations.service import IntegrationRow, visible_integrations


def test_the_read_statement_selects_the_row_fields_in_order() -> None:
    for is_admin in (False, True):
        columns = [column.name for column in visible_integrations(is_admin).selected_columns]
        assert columns == list(IntegrationRow._fields)
