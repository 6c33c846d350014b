"""Dates as the admin shows them: ops compare times across runs, logs and Smartlead, so every
date-time carries its time zone, in the one format the dashboard uses too."""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
