"""Small server-rendered SVG charts: no JavaScript, no CDN, readable in any browser."""

from dataclasses import dataclass

from django.utils.html import format_html, format_html_join


@dataclass
class Chart:
    width: int = 160
    height: int = 36
    pad: float = 2.0

    def points(self, values: list[float | None], top: float | None = None) -> list[tuple]:
        """Values to (x, y) pairs, left to right; None leaves a gap."""
        known = [v for v in values if v is not None]
        if not known:
            return []
        top = top if top is not None else max(known) or 1.0
        step = (self.width - 2 * self.pad) / max(len(values) - 1, 1)
        usable = self.height - 2 * self.pad
        return [
            (round(self.pad + i * step, 1), round(self.height - self.pad - usable * v / top, 1))
            if v is not None
            else None
            for i, v in enumerate(values)
        ]

    def line(self, values, label: str, top: float | None = None, css: str = "line"):
        """A polyline per unbroken run of values, with a title for screen readers."""
        runs, run = [], []
        for point in self.points(values, top):
            if point is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(point)
        if run:
            runs.append(run)
        polylines = format_html_join(
            "",
            '<polyline class="{}" points="{}"/>',
            ((css, " ".join(f"{x},{y}" for x, y in r)) for r in runs if len(r) > 1),
        ) + format_html_join(  # a lone reading between gaps would be an invisible line
            "",
            '<circle class="{}" cx="{}" cy="{}" r="2"/>',
            ((css, *r[0]) for r in runs if len(r) == 1),
        )
        return format_html(
            '<svg class="chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img">'
            "<title>{}</title>{}</svg>",
            self.width,
            self.height,
            self.width,
            self.height,
            label,
            polylines,
        )

    def bars(self, statuses: list[str], label: str):
        """One thin bar per sample, coloured by status: a history strip."""
        if not statuses:
            return format_html('<span class="muted">no samples yet</span>')
        step = self.width / len(statuses)
        rects = format_html_join(
            "",
            '<rect class="s-{}" x="{}" y="0" width="{}" height="{}"/>',
            (
                (s, round(i * step, 2), round(max(step - 0.5, 0.5), 2), self.height // 3)
                for i, s in enumerate(statuses)
            ),
        )
        return format_html(
            '<svg class="strip" viewBox="0 0 {} {}" width="{}" height="{}" role="img">'
            "<title>{}</title>{}</svg>",
            self.width,
            self.height // 3,
            self.width,
            self.height // 3,
            label,
            rects,
        )
