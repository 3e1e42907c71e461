"""Car model sources: mesh files (normalised into the car frame) and the procedural generator."""
