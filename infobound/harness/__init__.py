"""The verification harness: trains small models with each adapter mode and sets gaps beside bounds."""
