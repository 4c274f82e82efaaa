"""Pages for the CSV import of employees with identities, and the CSV export."""

urlpatterns = []
