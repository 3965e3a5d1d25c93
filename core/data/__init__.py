"""Images in: the datasets a run trains on, and archives a user gives."""
