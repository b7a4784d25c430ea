"""Analysis of a timing study: tidy data, statistics, plots and the HTML report."""
