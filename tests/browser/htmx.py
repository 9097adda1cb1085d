"""What browser tests wait for on pages HTMX refreshes."""


def count_swaps(page, n: int) -> None:
    """Wait until HTMX has swapped a refreshed part in `n` more times."""
    page.evaluate(
        "() => { window.swaps = 0;"
        " document.body.addEventListener('htmx:afterSettle', () => window.swaps++); }"
    )
    page.wait_for_function(f"() => window.swaps >= {n}")
