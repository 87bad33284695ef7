"""Tabletop manipulation tasks on the project's 7-DoF arm (`assets/arm_7dof.xml`)."""
