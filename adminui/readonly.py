"""A console page that shows and never edits: records kept by the platform itself (the audit log,
subscription deliveries), which change only through their own services."""


class ReadOnly:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
