"""The console's table pages: the list (and creating one), a table's items and stream, putting, editing and
deleting items, deleting the table."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from functions.models import Trigger
from invocations.sources.pages import create_from_form
from invocations.tables.forms import ItemForm, TableForm
from invocations.tables.models import Table

ITEMS_PAGE = 50
RECENT_RECORDS = 50


def _get_table_for_user(request, name):
    return get_object_or_404(Table.objects.select_related("owner"), owner=request.user, name=name)


def table_list(request):
    if request.method == "POST":
        form = TableForm(request.POST, owner=request.user)
        if form.is_valid():
            taken = f"You already have a table named {form.cleaned_data['name']}."
            created = create_from_form(request, form, "table", taken)
            if created is not None:
                return created
    else:
        form = TableForm(owner=request.user)
    tables = request.user.tables.annotate(item_count=Count("items"))
    return render(request, "tables/list.html", {"tables": tables, "form": form}, status=400 if form.errors else 200)


def table_detail(request, name):
    table = _get_table_for_user(request, name)
    initial = {}
    editing = request.GET.get("edit")
    if editing:
        item = get_object_or_404(table.items, pk=editing) if editing.isdigit() else None
        if item is None:
            return redirect(table)
        initial = {"item": ItemForm.text(item.data)}
    return _render_detail(request, table, ItemForm(table=table, initial=initial))


def _render_detail(request, table, form, status=200):
    return render(request, "tables/detail.html", {
        "table": table,
        "form": form,
        "items": Paginator(table.items.all(), ITEMS_PAGE).get_page(request.GET.get("page")),
        "records": table.stream_records.order_by("-sequence_number")[:RECENT_RECORDS],
        "cursors": [_with_lag(cursor, table) for cursor in table.cursors.select_related("trigger__function")],
    }, status=status)


def _with_lag(cursor, table):
    cursor.behind = table.last_sequence_number - cursor.position  # records not yet done with
    return cursor


@require_POST
def item_put(request, name):
    table = _get_table_for_user(request, name)
    form = ItemForm(request.POST, table=table)
    if not form.is_valid():
        return _render_detail(request, table, form, status=400)
    record, _ = table.put_item(form.cleaned_data["item"])
    if record is None:
        messages.success(request, "The item was already so: nothing changed, no stream record.")
    else:
        messages.success(request, f"Saved the item ({record.event_name}, stream record {record.sequence_text}).")
    return redirect(table)


@require_POST
def item_delete(request, name, pk):
    table = _get_table_for_user(request, name)
    item = get_object_or_404(table.items, pk=pk)
    record, _ = table.delete_item(table.keys_of(item.data))
    if record is not None:
        messages.success(request, f"Deleted the item (REMOVE, stream record {record.sequence_text}).")
    return redirect(table)


@require_POST
def table_delete(request, name):
    table = _get_table_for_user(request, name)
    with transaction.atomic():
        # Its stream triggers go with it (their invocations stay).
        triggers = Trigger.objects.filter(table_cursor__table=table)
        count = triggers.count()
        triggers.delete()
        table.delete()
    messages.success(request, f"Deleted table {name} and its {count} stream trigger(s).")
    return redirect("tables:list")
