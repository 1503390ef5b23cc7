"""Pages: where the writing is, its text lines (trained line finder or classical), PAGE XML and ALTO."""
