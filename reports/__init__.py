"""Reports over result.json files (HTML, Markdown, JUnit XML, CSV) and the regression gate."""
