"""Code that one lesson owns: its calculator, its run plan, its diagrams, its shipped teacher. Mechanisms
live one level up; lessons import them from there."""
