"""Letters: rendering, the template sandbox, fax PDFs and the texts catalogue."""
