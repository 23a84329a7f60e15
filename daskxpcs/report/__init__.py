"""Figures and the HTML report of a campaign output directory."""

from daskxpcs.report.html import make_figures, write_report
from daskxpcs.report.load import Campaign, MissingInput, load_campaign

__all__ = ["write_report", "make_figures", "load_campaign", "Campaign", "MissingInput"]
